package sqlite

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"stagehand/internal/store"
	"stagehand/internal/store/sqlstore"
)

// TestEventsOfQueryPlan checks that an object's history (Events.Of) is
// read from the index events_object in id order, backwards: neither a scan
// of the log nor a sort of its rows.
func TestEventsOfQueryPlan(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "stagehand.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(ctx, func(tx store.Tx) error {
		for i := range 2000 {
			e := store.Event{Actor: "alice", Action: "deploy", Object: "config", Subject: fmt.Sprintf("c%d", i%50), Result: "ok"}
			if err := tx.Events().Add(&e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.write.ExecContext(ctx, "ANALYZE"); err != nil {
		t.Fatal(err)
	}
	plan := queryPlan(ctx, t, db, sqlstore.EventsOfQuery, "config", "c7", int64(1500), 30)
	t.Logf("plan:\n%s", joinLines(plan))
	indexed := false
	for _, step := range plan {
		indexed = indexed || strings.Contains(step, "USING INDEX events_object (object=? AND subject=? AND id<?)")
		if strings.HasPrefix(step, "SCAN") || strings.Contains(step, "TEMP B-TREE") {
			t.Errorf("Events.Of scans or sorts: %q", step)
		}
	}
	if !indexed {
		t.Errorf("Events.Of does not search the index events_object on object, subject and id:\n%s", joinLines(plan))
	}
}

// queryPlan returns the detail column of SQLite's EXPLAIN QUERY PLAN of
// query with args, one step a line.
func queryPlan(ctx context.Context, t *testing.T, db *DB, query string, args ...any) []string {
	t.Helper()
	rows, err := db.read.QueryContext(ctx, "EXPLAIN QUERY PLAN "+query, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return plan
}
