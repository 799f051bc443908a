package sqlite

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"stagehand/internal/store"
	"stagehand/internal/store/sqlstore"
)

// TestHotStatements: Open prepares every hot statement on both pools; a
// transaction that runs one many times holds one handle on it; and
// concurrent readers sharing the prepared statements, with a writer
// adding rows meanwhile, each read their own user's rows.
func TestHotStatements(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "stagehand.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	for name, c := range map[string]stmtCache{"read": db.readHot, "write": db.writeHot} {
		if len(c) != len(hotQueries) {
			t.Errorf("%s pool: %d hot statements prepared, want %d", name, len(c), len(hotQueries))
		}
		for q := range hotQueries {
			if c[q] == nil {
				t.Errorf("%s pool: %q not prepared", name, q)
			}
		}
	}

	for q := range hotQueries {
		upper := strings.ToUpper(q)
		if strings.Contains(upper, "JOIN") || strings.Contains(upper, "ORDER BY") {
			t.Errorf("hot statement %q breaks the rule (%s): binding 0 or 1 after another value would compile it again", q, hotStatementRule)
		}
	}

	const readers, users = 8, 16
	ids := make([]int64, users)
	err = db.Update(ctx, func(stx store.Tx) error {
		def, err := stx.Orgs().Get(store.DefaultOrg)
		if err != nil {
			return err
		}
		for i := range users {
			u := &store.User{Name: fmt.Sprintf("u%d", i)}
			if err := stx.Users().Create(u); err != nil {
				return err
			}
			ids[i] = u.ID
			ws := &store.Workspace{OrgID: def.ID, Name: fmt.Sprintf("w%d", i), Kind: store.WorkspacePrivate}
			if err := stx.Workspaces().Create(ws); err != nil {
				return err
			}
			if err := stx.Memberships().Put(&store.Membership{UserID: u.ID, WorkspaceID: ws.ID, Role: "user"}); err != nil {
				return err
			}
			if err := stx.Configs().Create(&store.Config{Name: fmt.Sprintf("c%d", i), State: store.StateUndeployed, WorkspaceID: ws.ID, OwnerID: u.ID}); err != nil {
				return err
			}
		}
		// The same statement many times in one transaction: one handle.
		t := stx.(*sqlstore.Tx).Conn().(*tx)
		before := len(t.stmts)
		for range 50 {
			if _, err := stx.Users().GetByID(ids[0]); err != nil {
				return err
			}
		}
		byID := ""
		for q := range hotQueries {
			if strings.HasSuffix(q, " FROM users WHERE id = ?") {
				byID = q
			}
		}
		if len(t.stmts) != before+1 || t.stmts[byID] == nil {
			return fmt.Errorf("after 50 GetUserByID the transaction holds %d statement handles, want %d (the one of the user by id added)", len(t.stmts), before+1)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	errs := make(chan error, readers+1)
	wg.Add(1)
	go func() { // a writer, so readers see new snapshots as they go
		defer wg.Done()
		for i := range 50 {
			err := db.Update(ctx, func(tx store.Tx) error {
				return tx.Users().Create(&store.User{Name: fmt.Sprintf("new%d", i)})
			})
			if err != nil {
				errs <- err
				return
			}
		}
	}()
	for r := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range 100 {
				i := (r + n) % users
				err := db.View(ctx, func(tx store.Tx) error {
					v, err := tx.Viewers().Load(ids[i])
					if err != nil {
						return err
					}
					if v.UserID != ids[i] || len(v.Workspaces) != 1 || v.Workspaces[0].Role != "user" {
						return fmt.Errorf("LoadViewer(u%d) = %+v", i, v)
					}
					ref, err := tx.Objects().Ref(store.ObjectConfig, fmt.Sprintf("c%d", i))
					if err != nil {
						return err
					}
					if ref.OwnerID != ids[i] || ref.WorkspaceID != v.Workspaces[0].ID || ref.WorkspaceKind != store.WorkspacePrivate {
						return fmt.Errorf("ObjectRef(c%d) = %+v, viewer %+v", i, ref, v)
					}
					a, err := tx.Objects().Access(ids[i], store.ObjectConfig, fmt.Sprintf("c%d", i))
					if err != nil {
						return err
					}
					if a.Object != ref || len(a.Viewer.Workspaces) != 1 || a.Viewer.Workspaces[0] != v.Workspaces[0] {
						return fmt.Errorf("LoadAccess(u%d, c%d) = %+v, want object %+v and viewer %+v", i, i, a, ref, v)
					}
					u, err := tx.Users().GetByID(ids[i])
					if err != nil {
						return err
					}
					if u.Name != fmt.Sprintf("u%d", i) {
						return fmt.Errorf("GetUserByID(%d) = %q, want u%d", ids[i], u.Name, i)
					}
					return nil
				})
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
