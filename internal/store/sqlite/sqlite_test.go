package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"stagehand/internal/store"
	"stagehand/internal/store/storetest"
)

// openTest opens the database of test t under root: the same t always gets
// the same file, so the suite can close and reopen it.
func openTest(t *testing.T, root string) *DB {
	t.Helper()
	name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
	db, err := Open(context.Background(), filepath.Join(root, name+".db"))
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return db
}

func TestStore(t *testing.T) {
	root := t.TempDir()
	storetest.Run(t, func(t *testing.T) store.Store { return openTest(t, root) })
}

func TestSchemaTooNew(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stagehand.db")
	db, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	latest := migrations[len(migrations)-1].version
	if _, err := db.write.Exec("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, 'from the future', 0)", latest+1); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	_, err = Open(context.Background(), path)
	if !errors.Is(err, ErrSchemaTooNew) {
		t.Fatalf("Open of a newer schema: %v, want ErrSchemaTooNew", err)
	}
	for _, want := range []string{path, fmt.Sprintf("version %d", latest+1), fmt.Sprintf("up to %d", latest)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestMigrationsAppliedOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stagehand.db")
	for range 2 {
		db, err := Open(context.Background(), path)
		if err != nil {
			t.Fatal(err)
		}
		var n, max int
		if err := db.read.QueryRow("SELECT count(*), max(version) FROM schema_migrations").Scan(&n, &max); err != nil {
			t.Fatal(err)
		}
		if n != len(migrations) || max != migrations[len(migrations)-1].version {
			t.Errorf("schema_migrations has %d rows up to %d, want %d", n, max, len(migrations))
		}
		db.Close()
	}
}

// TestMigrateKeepsData opens a file written at schema version 1 and checks
// that the later migrations apply and keep its records.
func TestMigrateKeepsData(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "stagehand.db")
	old, err := sql.Open("sqlite", dsn(path, false))
	if err != nil {
		t.Fatal(err)
	}
	if err := migrate(ctx, old, migrations[:1]); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`INSERT INTO networks (id, name, subnet, gateway, dns, pools, created_at) VALUES (1, 'lan', '10.0.0.0/24', '10.0.0.1', '[]', '[]', 1)`,
		`INSERT INTO allocations (id, network_id, ip, kind, holder, created_at) VALUES (1, 1, '10.0.0.10', 'internal', '', 1)`,
		`INSERT INTO configs (id, name, description, owner, state, fenced, fence_policy, last_error, created_at, updated_at)
			VALUES (1, 'web', '', '', 'undeployed', 0, '', '', 1, 1)`,
		`INSERT INTO vms (id, config_id, name, cpus, memory_mib, state) VALUES (1, 1, 'db', 1, 64, 'undeployed')`,
		`INSERT INTO nics (id, vm_id, idx, network_id, mac, ip_mode, ip, allocation_id) VALUES (1, 1, 0, 1, '52:54:00:00:00:01', 'pool', '10.0.0.10', 1)`,
	} {
		if _, err := old.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	old.Close()

	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.View(ctx, func(tx store.Tx) error {
		c, err := tx.Configs().Get("web")
		if err != nil {
			return err
		}
		n := c.VMs[0].NICs[0]
		if n.IP != netip.MustParseAddr("10.0.0.10") || n.AllocationID != 1 || n.ExternalAllocationID != 0 {
			t.Errorf("NIC after migration: %+v", n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var v int
	if err := db.read.QueryRow("SELECT max(version) FROM schema_migrations").Scan(&v); err != nil || v != migrations[len(migrations)-1].version {
		t.Errorf("schema version %d (%v), want %d", v, err, migrations[len(migrations)-1].version)
	}
}

// TestConnectionSettings checks the settings every connection needs: WAL,
// foreign keys, a busy timeout, and read-only readers.
func TestConnectionSettings(t *testing.T) {
	db, err := Open(context.Background(), filepath.Join(t.TempDir(), "stagehand.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, c := range []struct {
		name string
		db   *sql.DB
	}{{"writer", db.write}, {"reader", db.read}} {
		for pragma, want := range map[string]string{
			"journal_mode": "wal", "foreign_keys": "1", "busy_timeout": "10000", "synchronous": "1",
		} {
			var got string
			if err := c.db.QueryRow("PRAGMA " + pragma).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Errorf("%s: PRAGMA %s = %s, want %s", c.name, pragma, got, want)
			}
		}
	}
	var qo int
	if err := db.read.QueryRow("PRAGMA query_only").Scan(&qo); err != nil || qo != 1 {
		t.Errorf("reader: query_only = %d (%v), want 1", qo, err)
	}
}

// TestOpenOddPath: the path goes into a file: URI, so characters that mean
// something there must survive.
func TestOpenOddPath(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a dir?with #odd%20chars")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "db?.sqlite")
	db, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(context.Background(), func(tx store.Tx) error {
		return tx.Ops().Create(&store.Op{Kind: "test"})
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := os.Stat(path); err != nil {
		t.Errorf("database not at the given path: %v", err)
	}
}

func BenchmarkSmallUpdate(b *testing.B) {
	db, err := Open(context.Background(), filepath.Join(b.TempDir(), "stagehand.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	b.SetParallelism(25)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := db.Update(context.Background(), func(tx store.Tx) error {
				return tx.Ops().Create(&store.Op{Kind: "bench", Subject: "x"})
			}); err != nil {
				b.Error(err)
			}
		}
	})
}
