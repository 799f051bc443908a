package sqlite

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"stagehand/internal/store"
)

// TestMigrateToOwnershipKeepsData opens a file written at schema version 4
// and checks that version 5 places every existing template, network,
// configuration, library entry and archive in the workspace main of the
// organization default, owned by nobody, and keeps their fields.
func TestMigrateToOwnershipKeepsData(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "stagehand.db")
	old, err := sql.Open("sqlite", dsn(path, false))
	if err != nil {
		t.Fatal(err)
	}
	if err := migrate(ctx, old, migrations[:4]); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`INSERT INTO templates (id, name, description, cpus, memory_mib, layer_ids, kernel, initrd, cmdline, created_at) VALUES (3, 'linux', 'd', 1, 64, '[]', '', '', '', 1)`,
		`INSERT INTO networks (id, name, subnet, gateway, dns, pools, created_at) VALUES (2, 'lan', '10.0.0.0/24', '10.0.0.1', '[]', '[]', 1)`,
		`INSERT INTO configs (id, name, description, owner, state, fenced, fence_policy, last_error, created_at, updated_at, kind)
			VALUES (4, 'web', '', 'me', 'undeployed', 0, '', '', 1, 1, 'config'), (5, 'lib', '', '', 'undeployed', 0, '', '', 1, 1, 'library')`,
		`INSERT INTO archives (id, name, source, dir, manifest, size, created_at) VALUES (12, 'a1', 'web', 'archive/a1', '{}', 5, 1)`,
	} {
		if _, err := old.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	old.Close()

	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.View(ctx, func(tx store.Tx) error {
		org, err := tx.Orgs().Get(store.DefaultOrg)
		if err != nil {
			return err
		}
		main, err := tx.Workspaces().Get(org.ID, store.MainWorkspace)
		if err != nil {
			return err
		}
		if main.Kind != store.WorkspaceShared {
			t.Errorf("workspace main is %q, want shared", main.Kind)
		}
		type placed struct {
			what        string
			ws, owner   int64
			keptAnother bool
		}
		var got []placed
		tm, err := tx.Templates().Get("linux")
		if err != nil {
			return err
		}
		got = append(got, placed{"template", tm.WorkspaceID, tm.OwnerID, tm.ID == 3 && tm.MemoryMiB == 64})
		n, err := tx.Networks().Get("lan")
		if err != nil {
			return err
		}
		got = append(got, placed{"network", n.WorkspaceID, n.OwnerID, n.ID == 2 && n.Gateway.String() == "10.0.0.1"})
		cs, err := tx.Configs().List()
		if err != nil {
			return err
		}
		for _, c := range cs {
			got = append(got, placed{c.Kind + " " + c.Name, c.WorkspaceID, c.OwnerID, c.Owner == "me" || c.Kind == store.KindLibrary})
		}
		as, err := tx.Archives().List()
		if err != nil {
			return err
		}
		for _, a := range as {
			got = append(got, placed{"archive", a.WorkspaceID, a.OwnerID, a.ID == 12 && a.Size == 5})
		}
		if len(got) != 5 {
			t.Errorf("objects after the migration: %+v, want 5", got)
		}
		for _, p := range got {
			if p.ws != main.ID || p.owner != 0 || !p.keptAnother {
				t.Errorf("%s after the migration: workspace %d owner %d (fields kept: %v), want workspace %d (main), no owner",
					p.what, p.ws, p.owner, p.keptAnother, main.ID)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
