package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ErrSchemaTooNew is returned by Open when the file was written by a newer
// program: its schema version is above the last migration this one knows,
// and running on it could corrupt records it does not understand.
var ErrSchemaTooNew = errors.New("database schema is newer than this program")

// A migration moves the schema from version-1 to version, in one
// transaction. Migrations are append-only: never edit one that has shipped.
// A migration that must rebuild a table cannot turn foreign_keys off inside
// its transaction (SQLite ignores the pragma there); it should create the
// new table, copy, drop and rename, which keeps references valid.
type migration struct {
	version int
	name    string
	sql     string
	// rebuild runs the migration with foreign keys off (SQLite's way to
	// rebuild a table that others reference: with them on, dropping the
	// old table would delete or refuse through its references) and checks
	// every reference with PRAGMA foreign_key_check before committing.
	rebuild bool
}

// migrations are the ones written in Go below, then the files
// migrations/NNNN_name.sql (from 0008 on; numbers follow without a gap).
// A file whose first line is "-- rebuild" runs as a rebuild migration.
var migrations = append(builtinMigrations, mustLoadMigrations(len(builtinMigrations))...)

//go:embed migrations
var migrationFiles embed.FS

// mustLoadMigrations reads the embedded migration files, numbered from
// after+1 on without a gap; a misnumbered file is a programming error the
// first test run reports.
func mustLoadMigrations(after int) []migration {
	names, err := fs.Glob(migrationFiles, "migrations/*.sql")
	if err != nil {
		panic(err)
	}
	sort.Strings(names)
	var ms []migration
	for i, n := range names {
		num, name, _ := strings.Cut(strings.TrimSuffix(path.Base(n), ".sql"), "_")
		if v, err := strconv.Atoi(num); err != nil || v != after+i+1 {
			panic(fmt.Sprintf("sqlite migration file %s: want number %04d", n, after+i+1))
		}
		b, err := migrationFiles.ReadFile(n)
		if err != nil {
			panic(err)
		}
		text := string(b)
		ms = append(ms, migration{version: after + i + 1, name: strings.ReplaceAll(name, "_", " "), sql: text,
			rebuild: strings.HasPrefix(text, "-- rebuild\n")})
	}
	return ms
}

var builtinMigrations = []migration{
	{1, "initial schema", schemaV1, false},
	{version: 2, name: "external addresses of fenced NICs", sql: `
ALTER TABLE nics ADD COLUMN external_allocation_id INTEGER REFERENCES allocations(id);
-- Deleting an allocation checks that no NIC maps it.
CREATE INDEX nics_external_allocation ON nics(external_allocation_id);
`},
	{3, "library entries, archives, leases, events", schemaV3, false},
	{4, "ids are never reused (AUTOINCREMENT)", schemaV4, true},
	{5, "organizations, workspaces, users, tokens, shares, quotas; ownership", schemaV5, false},
	{6, "console links (tokens of kind console)", schemaV6, false},
	{7, "hosts; the host a configuration is deployed on", schemaV7, false},
}

// schemaV7 records the daemons sharing a store (one per host) and, on each
// configuration, the name of the host it was last deployed on.
const schemaV7 = `
CREATE TABLE hosts (
	id            INTEGER PRIMARY KEY AUTOINCREMENT,
	name          TEXT    NOT NULL UNIQUE CHECK (name <> ''),
	advertise_url TEXT    NOT NULL,
	state         TEXT    NOT NULL CHECK (state IN ('active', 'draining', 'removed')),
	memory_mib    INTEGER NOT NULL,
	cpus          INTEGER NOT NULL,
	started_at    INTEGER NOT NULL,
	last_seen     INTEGER NOT NULL,
	created_at    INTEGER NOT NULL
) STRICT;
ALTER TABLE configs ADD COLUMN host TEXT NOT NULL DEFAULT '';
CREATE INDEX configs_host ON configs(host) WHERE host <> '';
`

// schemaV6 lets a token be a console link: kind 'console', naming the
// configuration (deleted with it) and the VM whose consoles it opens. The
// kind's CHECK cannot be altered in place, so the table is made again;
// nothing references tokens.
const schemaV6 = `
CREATE TABLE tokens_v6 (
	id                    TEXT    PRIMARY KEY CHECK (id <> ''),
	user_id               INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
	hash                  BLOB    NOT NULL,
	kind                  TEXT    NOT NULL CHECK (kind IN ('api', 'session', 'console')),
	name                  TEXT    NOT NULL,
	created_at            INTEGER NOT NULL,
	expires_at            INTEGER,
	last_used_at          INTEGER,
	revoked_at            INTEGER,
	restrict_workspace_id INTEGER REFERENCES workspaces(id) ON DELETE CASCADE,
	restrict_role         TEXT,
	console_config_id     INTEGER REFERENCES configs(id) ON DELETE CASCADE,
	console_vm            TEXT,
	CHECK ((kind = 'console') = (console_config_id IS NOT NULL AND console_vm IS NOT NULL))
) STRICT;
INSERT INTO tokens_v6 (id, user_id, hash, kind, name, created_at, expires_at, last_used_at, revoked_at, restrict_workspace_id, restrict_role)
	SELECT id, user_id, hash, kind, name, created_at, expires_at, last_used_at, revoked_at, restrict_workspace_id, restrict_role FROM tokens;
DROP TABLE tokens;
ALTER TABLE tokens_v6 RENAME TO tokens;
CREATE INDEX tokens_user ON tokens(user_id);
CREATE INDEX tokens_expires ON tokens(expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX tokens_restrict_workspace ON tokens(restrict_workspace_id) WHERE restrict_workspace_id IS NOT NULL;
CREATE INDEX tokens_console_config ON tokens(console_config_id) WHERE console_config_id IS NOT NULL;
`

// schemaV5: who is who (organizations, workspaces, users, groups,
// memberships, organization administrators, tokens), sharing, quotas, and
// the workspace and owner of every template, network, configuration and
// archive. It makes the organization 'default' with its shared workspace
// 'main' and places every existing object there, owned by nobody (the
// system).
//
// Shares and quotas name their object or scope by kind and id, which no
// foreign key can express; triggers delete them with what they name. Ids
// are never reused (AUTOINCREMENT), so a share left behind could not
// reach a new object anyway, but it would linger in lists.
//
// The indexes serve the visibility filter (visible.go): objects by
// workspace (and owner, for private workspaces), by owner (user quotas,
// DeleteUser), and shares by grantee. A user's memberships are found
// through the primary key (user_id first); shares of an object through
// the unique (object_kind, object_id, grantee) keys.
const schemaV5 = `
CREATE TABLE organizations (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	name       TEXT    NOT NULL UNIQUE,
	created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE workspaces (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	-- An organization with workspaces cannot be deleted.
	org_id     INTEGER NOT NULL REFERENCES organizations(id) ON DELETE RESTRICT,
	name       TEXT    NOT NULL,
	kind       TEXT    NOT NULL CHECK (kind IN ('shared', 'private')),
	created_at INTEGER NOT NULL,
	UNIQUE (org_id, name)
) STRICT;

CREATE TABLE users (
	id            INTEGER PRIMARY KEY AUTOINCREMENT,
	name          TEXT    NOT NULL UNIQUE,
	email         TEXT    UNIQUE COLLATE NOCASE, -- NULL: none
	display_name  TEXT    NOT NULL,
	password_hash TEXT,                          -- NULL: no password login
	disabled      INTEGER NOT NULL,
	system_admin  INTEGER NOT NULL,
	default_workspace_id INTEGER REFERENCES workspaces(id) ON DELETE SET NULL,
	created_at    INTEGER NOT NULL
) STRICT;

CREATE TABLE groups (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	org_id     INTEGER NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
	name       TEXT    NOT NULL,
	created_at INTEGER NOT NULL,
	UNIQUE (org_id, name)
) STRICT;

CREATE TABLE group_members (
	group_id INTEGER NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
	user_id  INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
	PRIMARY KEY (group_id, user_id)
) STRICT;
CREATE INDEX group_members_user ON group_members(user_id);

CREATE TABLE memberships (
	user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
	workspace_id INTEGER NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
	role         TEXT    NOT NULL CHECK (role <> ''),
	PRIMARY KEY (user_id, workspace_id)
) STRICT;
CREATE INDEX memberships_workspace ON memberships(workspace_id);

CREATE TABLE org_admins (
	org_id  INTEGER NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
	user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
	PRIMARY KEY (org_id, user_id)
) STRICT;
CREATE INDEX org_admins_user ON org_admins(user_id);

-- Times are unix nanoseconds; NULL for never/none.
CREATE TABLE tokens (
	id                    TEXT    PRIMARY KEY CHECK (id <> ''),
	user_id               INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
	hash                  BLOB    NOT NULL,
	kind                  TEXT    NOT NULL CHECK (kind IN ('api', 'session')),
	name                  TEXT    NOT NULL,
	created_at            INTEGER NOT NULL,
	expires_at            INTEGER,
	last_used_at          INTEGER,
	revoked_at            INTEGER,
	-- A token must not outlive the workspace it is restricted to: were the
	-- restriction cleared instead, the token would act everywhere.
	restrict_workspace_id INTEGER REFERENCES workspaces(id) ON DELETE CASCADE,
	restrict_role         TEXT
) STRICT;
CREATE INDEX tokens_user ON tokens(user_id);
CREATE INDEX tokens_expires ON tokens(expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX tokens_restrict_workspace ON tokens(restrict_workspace_id) WHERE restrict_workspace_id IS NOT NULL;

CREATE TABLE shares (
	id               INTEGER PRIMARY KEY AUTOINCREMENT,
	object_kind      TEXT    NOT NULL CHECK (object_kind IN ('config', 'template', 'network', 'archive')),
	object_id        INTEGER NOT NULL,
	grantee_user_id  INTEGER REFERENCES users(id) ON DELETE CASCADE,
	grantee_group_id INTEGER REFERENCES groups(id) ON DELETE CASCADE,
	level            TEXT    NOT NULL CHECK (level IN ('full', 'change', 'read', 'console')),
	created_at       INTEGER NOT NULL,
	CHECK ((grantee_user_id IS NULL) <> (grantee_group_id IS NULL)),
	UNIQUE (object_kind, object_id, grantee_user_id),
	UNIQUE (object_kind, object_id, grantee_group_id)
) STRICT;
CREATE INDEX shares_user ON shares(grantee_user_id, object_kind, object_id) WHERE grantee_user_id IS NOT NULL;
CREATE INDEX shares_group ON shares(grantee_group_id, object_kind, object_id) WHERE grantee_group_id IS NOT NULL;

CREATE TABLE quotas (
	scope        TEXT    NOT NULL CHECK (scope IN ('user', 'workspace')),
	scope_id     INTEGER NOT NULL,
	stored_vms   INTEGER NOT NULL,
	deployed_vms INTEGER NOT NULL,
	vcpus        INTEGER NOT NULL,
	memory_mib   INTEGER NOT NULL,
	disk_gib     INTEGER NOT NULL,
	PRIMARY KEY (scope, scope_id)
) STRICT;

-- Ownership. Neither a workspace nor a user can be deleted while an object
-- refers to it (the lab moves or deletes the objects first).
ALTER TABLE templates ADD COLUMN workspace_id INTEGER REFERENCES workspaces(id);
ALTER TABLE templates ADD COLUMN owner_id     INTEGER REFERENCES users(id);
ALTER TABLE networks  ADD COLUMN workspace_id INTEGER REFERENCES workspaces(id);
ALTER TABLE networks  ADD COLUMN owner_id     INTEGER REFERENCES users(id);
ALTER TABLE configs   ADD COLUMN workspace_id INTEGER REFERENCES workspaces(id);
ALTER TABLE configs   ADD COLUMN owner_id     INTEGER REFERENCES users(id);
ALTER TABLE archives  ADD COLUMN workspace_id INTEGER REFERENCES workspaces(id);
ALTER TABLE archives  ADD COLUMN owner_id     INTEGER REFERENCES users(id);
CREATE INDEX templates_workspace ON templates(workspace_id, owner_id);
CREATE INDEX templates_owner     ON templates(owner_id);
CREATE INDEX networks_workspace  ON networks(workspace_id, owner_id);
CREATE INDEX networks_owner      ON networks(owner_id);
CREATE INDEX configs_workspace   ON configs(workspace_id, owner_id);
CREATE INDEX configs_owner       ON configs(owner_id);
CREATE INDEX archives_workspace  ON archives(workspace_id, owner_id);
CREATE INDEX archives_owner      ON archives(owner_id);

CREATE TRIGGER configs_unshare   AFTER DELETE ON configs   BEGIN DELETE FROM shares WHERE object_kind = 'config'   AND object_id = OLD.id; END;
CREATE TRIGGER templates_unshare AFTER DELETE ON templates BEGIN DELETE FROM shares WHERE object_kind = 'template' AND object_id = OLD.id; END;
CREATE TRIGGER networks_unshare  AFTER DELETE ON networks  BEGIN DELETE FROM shares WHERE object_kind = 'network'  AND object_id = OLD.id; END;
CREATE TRIGGER archives_unshare  AFTER DELETE ON archives  BEGIN DELETE FROM shares WHERE object_kind = 'archive'  AND object_id = OLD.id; END;
CREATE TRIGGER users_unquota      AFTER DELETE ON users      BEGIN DELETE FROM quotas WHERE scope = 'user'      AND scope_id = OLD.id; END;
CREATE TRIGGER workspaces_unquota AFTER DELETE ON workspaces BEGIN DELETE FROM quotas WHERE scope = 'workspace' AND scope_id = OLD.id; END;

INSERT INTO organizations (name, created_at) VALUES ('default', CAST(unixepoch('subsec') * 1e9 AS INTEGER));
INSERT INTO workspaces (org_id, name, kind, created_at)
	SELECT id, 'main', 'shared', created_at FROM organizations WHERE name = 'default';
UPDATE templates SET workspace_id = (SELECT id FROM workspaces WHERE name = 'main');
UPDATE networks  SET workspace_id = (SELECT id FROM workspaces WHERE name = 'main');
UPDATE configs   SET workspace_id = (SELECT id FROM workspaces WHERE name = 'main');
UPDATE archives  SET workspace_id = (SELECT id FROM workspaces WHERE name = 'main');
`

// schemaV4 rebuilds every table whose ids are kept elsewhere (in other
// rows, in JSON lists, or on the host: VM run directories, tap and fence
// names) with AUTOINCREMENT, so that a deleted row's id is never given to a
// new row. Without it SQLite reuses the highest id after a delete: a new
// delta took its deleted base's id and became its own parent. The copy
// keeps every id; AUTOINCREMENT then starts after the highest one kept.
// Each table is created under a new name, filled, the old one dropped, the
// new one renamed, and its indexes made again (the 12-step procedure of
// https://www.sqlite.org/lang_altertable.html#otheralter).
const schemaV4 = `
CREATE TABLE templates_v4 (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	name        TEXT    NOT NULL UNIQUE,
	description TEXT    NOT NULL,
	cpus        INTEGER NOT NULL,
	memory_mib  INTEGER NOT NULL,
	layer_ids   TEXT    NOT NULL, -- JSON array of layer ids, in disk order
	kernel      TEXT    NOT NULL,
	initrd      TEXT    NOT NULL,
	cmdline     TEXT    NOT NULL,
	created_at  INTEGER NOT NULL
) STRICT;
INSERT INTO templates_v4 (id, name, description, cpus, memory_mib, layer_ids, kernel, initrd, cmdline, created_at)
	SELECT id, name, description, cpus, memory_mib, layer_ids, kernel, initrd, cmdline, created_at FROM templates;
DROP TABLE templates;
ALTER TABLE templates_v4 RENAME TO templates;

CREATE TABLE layers_v4 (
	id           INTEGER PRIMARY KEY AUTOINCREMENT,
	path         TEXT    NOT NULL UNIQUE,
	-- A parent with children cannot be deleted.
	parent_id    INTEGER REFERENCES layers(id) ON DELETE RESTRICT,
	frozen       INTEGER NOT NULL,
	-- No foreign key: the lab clears it before it deletes the template.
	template_id  INTEGER,
	virtual_size INTEGER NOT NULL,
	created_at   INTEGER NOT NULL
) STRICT;
INSERT INTO layers_v4 (id, path, parent_id, frozen, template_id, virtual_size, created_at)
	SELECT id, path, parent_id, frozen, template_id, virtual_size, created_at FROM layers;
DROP TABLE layers;
ALTER TABLE layers_v4 RENAME TO layers;
CREATE INDEX layers_parent ON layers(parent_id);

CREATE TABLE networks_v4 (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	name       TEXT    NOT NULL UNIQUE,
	subnet     TEXT,
	gateway    TEXT,
	dns        TEXT    NOT NULL, -- JSON array of addresses
	pools      TEXT    NOT NULL, -- JSON array of {"first","last"}
	created_at INTEGER NOT NULL
) STRICT;
INSERT INTO networks_v4 (id, name, subnet, gateway, dns, pools, created_at)
	SELECT id, name, subnet, gateway, dns, pools, created_at FROM networks;
DROP TABLE networks;
ALTER TABLE networks_v4 RENAME TO networks;

CREATE TABLE allocations_v4 (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	network_id INTEGER NOT NULL REFERENCES networks(id) ON DELETE RESTRICT,
	ip         TEXT    NOT NULL,
	kind       TEXT    NOT NULL,
	holder     TEXT    NOT NULL,
	created_at INTEGER NOT NULL,
	UNIQUE (network_id, ip)
) STRICT;
INSERT INTO allocations_v4 (id, network_id, ip, kind, holder, created_at)
	SELECT id, network_id, ip, kind, holder, created_at FROM allocations;
DROP TABLE allocations;
ALTER TABLE allocations_v4 RENAME TO allocations;
CREATE INDEX allocations_network ON allocations(network_id);

CREATE TABLE configs_v4 (
	id           INTEGER PRIMARY KEY AUTOINCREMENT,
	name         TEXT    NOT NULL UNIQUE,
	description  TEXT    NOT NULL,
	owner        TEXT    NOT NULL,
	state        TEXT    NOT NULL,
	fenced       INTEGER NOT NULL,
	fence_policy TEXT    NOT NULL,
	last_error   TEXT    NOT NULL,
	created_at   INTEGER NOT NULL,
	updated_at   INTEGER NOT NULL,
	kind         TEXT    NOT NULL DEFAULT 'config'
) STRICT;
INSERT INTO configs_v4 (id, name, description, owner, state, fenced, fence_policy, last_error, created_at, updated_at, kind)
	SELECT id, name, description, owner, state, fenced, fence_policy, last_error, created_at, updated_at, kind FROM configs;
DROP TABLE configs;
ALTER TABLE configs_v4 RENAME TO configs;

CREATE TABLE vms_v4 (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	config_id   INTEGER NOT NULL REFERENCES configs(id) ON DELETE CASCADE,
	name        TEXT    NOT NULL,
	-- Informational once created: a template may go while its VMs stay.
	template_id INTEGER,
	cpus        INTEGER NOT NULL,
	memory_mib  INTEGER NOT NULL,
	state       TEXT    NOT NULL,
	UNIQUE (config_id, name)
) STRICT;
INSERT INTO vms_v4 (id, config_id, name, template_id, cpus, memory_mib, state)
	SELECT id, config_id, name, template_id, cpus, memory_mib, state FROM vms;
DROP TABLE vms;
ALTER TABLE vms_v4 RENAME TO vms;

CREATE TABLE nics_v4 (
	id                     INTEGER PRIMARY KEY AUTOINCREMENT,
	vm_id                  INTEGER NOT NULL REFERENCES vms(id) ON DELETE CASCADE,
	idx                    INTEGER NOT NULL,
	network_id             INTEGER NOT NULL REFERENCES networks(id) ON DELETE RESTRICT,
	mac                    TEXT    NOT NULL UNIQUE,
	ip_mode                TEXT    NOT NULL,
	ip                     TEXT,
	allocation_id          INTEGER REFERENCES allocations(id) ON DELETE RESTRICT,
	external_allocation_id INTEGER REFERENCES allocations(id),
	UNIQUE (vm_id, idx)
) STRICT;
INSERT INTO nics_v4 (id, vm_id, idx, network_id, mac, ip_mode, ip, allocation_id, external_allocation_id)
	SELECT id, vm_id, idx, network_id, mac, ip_mode, ip, allocation_id, external_allocation_id FROM nics;
DROP TABLE nics;
ALTER TABLE nics_v4 RENAME TO nics;
CREATE INDEX nics_network ON nics(network_id);
CREATE INDEX nics_allocation ON nics(allocation_id);
-- Deleting an allocation checks that no NIC maps it.
CREATE INDEX nics_external_allocation ON nics(external_allocation_id);

CREATE TABLE archives_v4 (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	name       TEXT    NOT NULL UNIQUE,
	source     TEXT    NOT NULL,
	dir        TEXT    NOT NULL UNIQUE,
	manifest   TEXT    NOT NULL, -- JSON, owned by the lab
	size       INTEGER NOT NULL,
	created_at INTEGER NOT NULL
) STRICT;
INSERT INTO archives_v4 (id, name, source, dir, manifest, size, created_at)
	SELECT id, name, source, dir, manifest, size, created_at FROM archives;
DROP TABLE archives;
ALTER TABLE archives_v4 RENAME TO archives;

CREATE TABLE ops_v4 (
	id            INTEGER PRIMARY KEY AUTOINCREMENT,
	kind          TEXT    NOT NULL,
	subject       TEXT    NOT NULL,
	created_files TEXT    NOT NULL, -- JSON arrays of paths
	frozen_files  TEXT    NOT NULL,
	remove_files  TEXT    NOT NULL,
	committed     INTEGER NOT NULL,
	started_at    INTEGER NOT NULL
) STRICT;
INSERT INTO ops_v4 (id, kind, subject, created_files, frozen_files, remove_files, committed, started_at)
	SELECT id, kind, subject, created_files, frozen_files, remove_files, committed, started_at FROM ops;
DROP TABLE ops;
ALTER TABLE ops_v4 RENAME TO ops;
`

// schemaV3: a configuration's kind (library entries are configurations),
// archives, leases of configurations and archives, and the event log.
// Lease times are unix nanoseconds, 0 for none.
const schemaV3 = `
ALTER TABLE configs ADD COLUMN kind TEXT NOT NULL DEFAULT 'config';

CREATE TABLE archives (
	id         INTEGER PRIMARY KEY,
	name       TEXT    NOT NULL UNIQUE,
	source     TEXT    NOT NULL,
	dir        TEXT    NOT NULL UNIQUE,
	manifest   TEXT    NOT NULL, -- JSON, owned by the lab
	size       INTEGER NOT NULL,
	created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE leases (
	id              INTEGER PRIMARY KEY,
	config_id       INTEGER UNIQUE REFERENCES configs(id) ON DELETE CASCADE,
	archive_id      INTEGER UNIQUE REFERENCES archives(id) ON DELETE CASCADE,
	storage_expires INTEGER NOT NULL,
	expired_at      INTEGER NOT NULL,
	deploy_lease    INTEGER NOT NULL, -- nanoseconds
	deploy_expires  INTEGER NOT NULL,
	undeploy_action TEXT    NOT NULL,
	last_used       INTEGER NOT NULL,
	CHECK ((config_id IS NULL) <> (archive_id IS NULL))
) STRICT;

CREATE TABLE events (
	id      INTEGER PRIMARY KEY AUTOINCREMENT, -- ids never reused: followers resume after one
	at      INTEGER NOT NULL,
	actor   TEXT    NOT NULL,
	action  TEXT    NOT NULL,
	object  TEXT    NOT NULL,
	subject TEXT    NOT NULL,
	result  TEXT    NOT NULL,
	detail  TEXT    NOT NULL
) STRICT;
CREATE INDEX events_at ON events(at);
`

// Times are unix nanoseconds (UTC); addresses and prefixes are their text
// form, NULL when zero; lists are JSON arrays. STRICT makes SQLite refuse a
// value of the wrong type instead of storing it anyway.
const schemaV1 = `
CREATE TABLE templates (
	id          INTEGER PRIMARY KEY,
	name        TEXT    NOT NULL UNIQUE,
	description TEXT    NOT NULL,
	cpus        INTEGER NOT NULL,
	memory_mib  INTEGER NOT NULL,
	layer_ids   TEXT    NOT NULL, -- JSON array of layer ids, in disk order
	kernel      TEXT    NOT NULL,
	initrd      TEXT    NOT NULL,
	cmdline     TEXT    NOT NULL,
	created_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE layers (
	id           INTEGER PRIMARY KEY,
	path         TEXT    NOT NULL UNIQUE,
	-- A parent with children cannot be deleted.
	parent_id    INTEGER REFERENCES layers(id) ON DELETE RESTRICT,
	frozen       INTEGER NOT NULL,
	-- No foreign key: the lab clears it before it deletes the template.
	template_id  INTEGER,
	virtual_size INTEGER NOT NULL,
	created_at   INTEGER NOT NULL
) STRICT;
CREATE INDEX layers_parent ON layers(parent_id);

CREATE TABLE networks (
	id         INTEGER PRIMARY KEY,
	name       TEXT    NOT NULL UNIQUE,
	subnet     TEXT,
	gateway    TEXT,
	dns        TEXT    NOT NULL, -- JSON array of addresses
	pools      TEXT    NOT NULL, -- JSON array of {"first","last"}
	created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE allocations (
	id         INTEGER PRIMARY KEY,
	network_id INTEGER NOT NULL REFERENCES networks(id) ON DELETE RESTRICT,
	ip         TEXT    NOT NULL,
	kind       TEXT    NOT NULL,
	holder     TEXT    NOT NULL,
	created_at INTEGER NOT NULL,
	UNIQUE (network_id, ip)
) STRICT;
-- Rows of one network in id order without a sort (ListAllocations).
CREATE INDEX allocations_network ON allocations(network_id);

CREATE TABLE configs (
	id           INTEGER PRIMARY KEY,
	name         TEXT    NOT NULL UNIQUE,
	description  TEXT    NOT NULL,
	owner        TEXT    NOT NULL,
	state        TEXT    NOT NULL,
	fenced       INTEGER NOT NULL,
	fence_policy TEXT    NOT NULL,
	last_error   TEXT    NOT NULL,
	created_at   INTEGER NOT NULL,
	updated_at   INTEGER NOT NULL
) STRICT;

CREATE TABLE vms (
	id          INTEGER PRIMARY KEY,
	config_id   INTEGER NOT NULL REFERENCES configs(id) ON DELETE CASCADE,
	name        TEXT    NOT NULL,
	-- Informational once created: a template may go while its VMs stay.
	template_id INTEGER,
	cpus        INTEGER NOT NULL,
	memory_mib  INTEGER NOT NULL,
	state       TEXT    NOT NULL,
	UNIQUE (config_id, name)
) STRICT;

CREATE TABLE disks (
	id           INTEGER PRIMARY KEY,
	vm_id        INTEGER NOT NULL REFERENCES vms(id) ON DELETE CASCADE,
	idx          INTEGER NOT NULL,
	top_layer_id INTEGER NOT NULL REFERENCES layers(id) ON DELETE RESTRICT,
	UNIQUE (vm_id, idx)
) STRICT;
CREATE INDEX disks_top_layer ON disks(top_layer_id);

CREATE TABLE nics (
	id            INTEGER PRIMARY KEY,
	vm_id         INTEGER NOT NULL REFERENCES vms(id) ON DELETE CASCADE,
	idx           INTEGER NOT NULL,
	network_id    INTEGER NOT NULL REFERENCES networks(id) ON DELETE RESTRICT,
	mac           TEXT    NOT NULL UNIQUE,
	ip_mode       TEXT    NOT NULL,
	ip            TEXT,
	allocation_id INTEGER REFERENCES allocations(id) ON DELETE RESTRICT,
	UNIQUE (vm_id, idx)
) STRICT;
CREATE INDEX nics_network ON nics(network_id);
CREATE INDEX nics_allocation ON nics(allocation_id);

CREATE TABLE ops (
	id            INTEGER PRIMARY KEY,
	kind          TEXT    NOT NULL,
	subject       TEXT    NOT NULL,
	created_files TEXT    NOT NULL, -- JSON arrays of paths
	frozen_files  TEXT    NOT NULL,
	remove_files  TEXT    NOT NULL,
	committed     INTEGER NOT NULL,
	started_at    INTEGER NOT NULL
) STRICT;
`

// migrate brings the schema of db up to the last known version, one
// migration per transaction. It refuses a schema newer than it knows before
// touching anything. The version is read again inside each transaction
// (BEGIN IMMEDIATE), so two processes opening the same new file at once do
// not both apply a migration.
func migrate(ctx context.Context, db *sql.DB, migrations []migration) error {
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER PRIMARY KEY,
		name       TEXT    NOT NULL,
		applied_at INTEGER NOT NULL
	) STRICT`); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	cur, err := schemaVersion(ctx, db)
	if err != nil {
		return err
	}
	latest := migrations[len(migrations)-1].version
	if err := checkKnown(cur, latest); err != nil {
		return err
	}
	for _, m := range migrations {
		if m.version > cur {
			if err := applyMigration(ctx, db, m, latest); err != nil {
				return err
			}
		}
	}
	return nil
}

type queryRower interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func schemaVersion(ctx context.Context, q queryRower) (int, error) {
	var v int
	if err := q.QueryRowContext(ctx, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations").Scan(&v); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	return v, nil
}

func checkKnown(version, latest int) error {
	if version > latest {
		return fmt.Errorf("%w: the file is at schema version %d, this program knows up to %d; run a newer stagehand", ErrSchemaTooNew, version, latest)
	}
	return nil
}

func applyMigration(ctx context.Context, db *sql.DB, m migration, latest int) error {
	// One connection for the pragma and the transaction: foreign_keys is
	// a per-connection setting, and a no-op inside a transaction.
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("migration %d (%s): %w", m.version, m.name, err)
	}
	defer conn.Close()
	if m.rebuild {
		if _, err := conn.ExecContext(ctx, "PRAGMA foreign_keys = OFF"); err != nil {
			return fmt.Errorf("migration %d (%s): %w", m.version, m.name, err)
		}
		defer conn.ExecContext(context.WithoutCancel(ctx), "PRAGMA foreign_keys = ON")
	}
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migration %d (%s): %w", m.version, m.name, err)
	}
	defer tx.Rollback()
	cur, err := schemaVersion(ctx, tx)
	if err != nil {
		return err
	}
	if err := checkKnown(cur, latest); err != nil {
		return err
	}
	if cur >= m.version {
		return nil // another process applied it meanwhile
	}
	if cur != m.version-1 {
		return fmt.Errorf("migration %d (%s): schema is at version %d, want %d", m.version, m.name, cur, m.version-1)
	}
	if _, err := tx.ExecContext(ctx, m.sql); err != nil {
		return fmt.Errorf("migration %d (%s): %w", m.version, m.name, err)
	}
	if m.rebuild {
		if err := checkForeignKeys(ctx, tx); err != nil {
			return fmt.Errorf("migration %d (%s): %w", m.version, m.name, err)
		}
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
		m.version, m.name, time.Now().UnixNano()); err != nil {
		return fmt.Errorf("migration %d (%s): record version: %w", m.version, m.name, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migration %d (%s): commit: %w", m.version, m.name, err)
	}
	return nil
}

// checkForeignKeys fails when any reference in the database points at a
// row that does not exist (what foreign_keys would have refused).
func checkForeignKeys(ctx context.Context, tx *sql.Tx) error {
	rows, err := tx.QueryContext(ctx, "PRAGMA foreign_key_check")
	if err != nil {
		return fmt.Errorf("foreign key check: %w", err)
	}
	defer rows.Close()
	var broken []string
	for rows.Next() {
		var table, parent string
		var rowid sql.NullInt64
		var fkid int64
		if err := rows.Scan(&table, &rowid, &parent, &fkid); err != nil {
			return fmt.Errorf("foreign key check: %w", err)
		}
		broken = append(broken, fmt.Sprintf("%s row %d -> %s", table, rowid.Int64, parent))
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("foreign key check: %w", err)
	}
	if len(broken) > 0 {
		return fmt.Errorf("foreign key check: %d broken reference(s): %s", len(broken), strings.Join(broken, "; "))
	}
	return nil
}
