package sqlite

import (
	"context"
	"database/sql"
	"path/filepath"
	"slices"
	"testing"
)

// rowsOf inserts one row into each table whose ids are kept elsewhere, in
// reference order; the same statements serve both tests below.
var idTables = []struct{ table, insert string }{
	{"templates", `INSERT INTO templates (name, description, cpus, memory_mib, layer_ids, kernel, initrd, cmdline, created_at) VALUES ('t'||?, '', 1, 64, '[]', '', '', '', 1)`},
	{"layers", `INSERT INTO layers (path, parent_id, frozen, template_id, virtual_size, created_at) VALUES ('l'||?, NULL, 0, NULL, 1, 1)`},
	{"networks", `INSERT INTO networks (name, subnet, gateway, dns, pools, created_at) VALUES ('n'||?, NULL, NULL, '[]', '[]', 1)`},
	{"allocations", `INSERT INTO allocations (network_id, ip, kind, holder, created_at) VALUES ((SELECT min(id) FROM networks), '10.0.0.'||?, 'internal', '', 1)`},
	{"configs", `INSERT INTO configs (name, description, owner, state, fenced, fence_policy, last_error, created_at, updated_at) VALUES ('c'||?, '', '', 'undeployed', 0, '', '', 1, 1)`},
	{"vms", `INSERT INTO vms (config_id, name, cpus, memory_mib, state) VALUES ((SELECT min(id) FROM configs), 'v'||?, 1, 64, 'undeployed')`},
	{"nics", `INSERT INTO nics (vm_id, idx, network_id, mac, ip_mode) VALUES ((SELECT min(id) FROM vms), ?, (SELECT min(id) FROM networks), 'm'||random(), 'dhcp')`},
	{"archives", `INSERT INTO archives (name, source, dir, manifest, size, created_at) VALUES ('a'||?, '', 'd'||?, '{}', 0, 1)`},
	{"ops", `INSERT INTO ops (kind, subject, created_files, frozen_files, remove_files, committed, started_at) VALUES ('k', 's'||?, '[]', '[]', '[]', 0, 1)`},
}

func insertRow(t *testing.T, db *sql.DB, i int, table, q string) int64 {
	t.Helper()
	args := []any{i}
	if table == "archives" {
		args = append(args, i)
	}
	res, err := db.Exec(q, args...)
	if err != nil {
		t.Fatalf("insert into %s: %v", table, err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// checkNoReuse deletes the newest row of each table and checks that the
// next insert gets a new id. The rows are deleted children first.
func checkNoReuse(t *testing.T, db *sql.DB, n int) {
	t.Helper()
	newest := map[string]int64{}
	for _, x := range idTables {
		newest[x.table] = insertRow(t, db, n, x.table, x.insert)
	}
	for i := len(idTables) - 1; i >= 0; i-- {
		x := idTables[i]
		if _, err := db.Exec("DELETE FROM "+x.table+" WHERE id = ?", newest[x.table]); err != nil {
			t.Fatalf("delete from %s: %v", x.table, err)
		}
	}
	for _, x := range idTables {
		if id := insertRow(t, db, n+1, x.table, x.insert); id <= newest[x.table] {
			t.Errorf("%s: new row got id %d, the deleted row's id was %d: ids are reused", x.table, id, newest[x.table])
		}
	}
}

// A deleted row's id is never given to a new row (M7: a new delta took its
// deleted base's id and became its own parent).
func TestIDsAreNeverReused(t *testing.T) {
	db, err := Open(context.Background(), filepath.Join(t.TempDir(), "stagehand.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for i, x := range idTables {
		insertRow(t, db.write, i, x.table, x.insert) // a first row that stays
	}
	checkNoReuse(t, db.write, 100)
}

// The AUTOINCREMENT migration keeps every row, id and index of a file at
// schema version 3, leaves foreign keys enforced, and ids are not reused
// afterwards.
func TestMigrationToAutoincrementKeepsData(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "stagehand.db")
	old, err := sql.Open("sqlite", dsn(path, false))
	if err != nil {
		t.Fatal(err)
	}
	if err := migrate(ctx, old, migrations[:3]); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`INSERT INTO templates (id, name, description, cpus, memory_mib, layer_ids, kernel, initrd, cmdline, created_at) VALUES (3, 'linux', 'd', 1, 64, '[7]', 'k', 'i', 'c', 1)`,
		`INSERT INTO layers (id, path, parent_id, frozen, template_id, virtual_size, created_at) VALUES (7, 'layers/base', NULL, 1, 3, 10, 1)`,
		`INSERT INTO layers (id, path, parent_id, frozen, template_id, virtual_size, created_at) VALUES (9, 'layers/top', 7, 0, NULL, 10, 2)`,
		`INSERT INTO networks (id, name, subnet, gateway, dns, pools, created_at) VALUES (2, 'lan', '10.0.0.0/24', '10.0.0.1', '[]', '[]', 1)`,
		`INSERT INTO allocations (id, network_id, ip, kind, holder, created_at) VALUES (5, 2, '10.0.0.10', 'internal', '', 1)`,
		`INSERT INTO allocations (id, network_id, ip, kind, holder, created_at) VALUES (6, 2, '10.0.0.11', 'external', '', 1)`,
		`INSERT INTO configs (id, name, description, owner, state, fenced, fence_policy, last_error, created_at, updated_at, kind)
			VALUES (4, 'web', 'desc', 'me', 'undeployed', 0, '', '', 1, 1, 'library')`,
		`INSERT INTO vms (id, config_id, name, template_id, cpus, memory_mib, state) VALUES (8, 4, 'db', 3, 1, 64, 'undeployed')`,
		`INSERT INTO disks (id, vm_id, idx, top_layer_id) VALUES (1, 8, 0, 9)`,
		`INSERT INTO nics (id, vm_id, idx, network_id, mac, ip_mode, ip, allocation_id, external_allocation_id) VALUES (11, 8, 0, 2, '52:54:00:00:00:01', 'pool', '10.0.0.10', 5, 6)`,
		`INSERT INTO archives (id, name, source, dir, manifest, size, created_at) VALUES (12, 'a1', 'web', 'archive/a1', '{}', 5, 1)`,
		`INSERT INTO leases (config_id, archive_id, storage_expires, expired_at, deploy_lease, deploy_expires, undeploy_action, last_used) VALUES (4, NULL, 1, 0, 0, 0, 'save', 1)`,
		`INSERT INTO leases (config_id, archive_id, storage_expires, expired_at, deploy_lease, deploy_expires, undeploy_action, last_used) VALUES (NULL, 12, 1, 0, 0, 0, 'save', 1)`,
		`INSERT INTO ops (id, kind, subject, created_files, frozen_files, remove_files, committed, started_at) VALUES (13, 'create', 'web', '["x"]', '[]', '[]', 1, 1)`,
	} {
		if _, err := old.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	dump := func(db *sql.DB) []string {
		var out []string
		for _, q := range []string{
			"SELECT 'index '||name||' on '||tbl_name FROM sqlite_schema WHERE type = 'index' ORDER BY name",
			"SELECT 'template '||id||name||description||layer_ids||kernel||initrd||cmdline FROM templates",
			"SELECT 'layer '||id||path||coalesce(parent_id,'-')||frozen||coalesce(template_id,'-')||virtual_size||created_at FROM layers ORDER BY id",
			"SELECT 'network '||id||name||subnet||gateway FROM networks",
			"SELECT 'allocation '||id||network_id||ip||kind FROM allocations ORDER BY id",
			"SELECT 'config '||id||name||description||owner||kind FROM configs",
			"SELECT 'vm '||id||config_id||name||template_id FROM vms",
			"SELECT 'disk '||id||vm_id||top_layer_id FROM disks",
			"SELECT 'nic '||id||vm_id||network_id||mac||ip||allocation_id||external_allocation_id FROM nics",
			"SELECT 'archive '||id||name||dir FROM archives",
			"SELECT 'lease '||id||coalesce(config_id,'-')||coalesce(archive_id,'-') FROM leases ORDER BY id",
			"SELECT 'op '||id||kind||subject||created_files FROM ops",
		} {
			rows, err := db.Query(q)
			if err != nil {
				t.Fatalf("%s: %v", q, err)
			}
			for rows.Next() {
				var s string
				if err := rows.Scan(&s); err != nil {
					t.Fatal(err)
				}
				out = append(out, s)
			}
			rows.Close()
		}
		return out
	}
	before := dump(old)
	old.Close()

	// Up to version 4 only: later migrations add indexes and columns of
	// their own (TestMigrateToOwnershipKeepsData checks version 5).
	db, err := sql.Open("sqlite", dsn(path, false))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1) // the connection the migration ran on is the one checked
	if err := migrate(ctx, db, migrations[:4]); err != nil {
		t.Fatal(err)
	}
	after := dump(db)
	if !slices.Equal(before, after) {
		t.Errorf("migration changed the data or the indexes:\nbefore %q\nafter  %q", before, after)
	}
	var fk int
	if err := db.QueryRow("PRAGMA foreign_keys").Scan(&fk); err != nil || fk != 1 {
		t.Errorf("foreign_keys = %d (%v) after the migration, want 1", fk, err)
	}
	// A parent with children still cannot be deleted.
	if _, err := db.Exec("DELETE FROM layers WHERE id = 7"); err == nil {
		t.Error("deleting a layer with a child succeeded: the rebuilt table lost its foreign key")
	}
	checkNoReuse(t, db, 100)
}
