package postgres

import (
	"context"
	"strings"
	"testing"

	"stagehand/internal/store/sqlstore"
)

// TestEventsOfQueryPlan checks that PostgreSQL reads an object's history
// (Events.Of) from the index events_object backwards, over a log of
// 20,000 events about 100 objects: neither a scan of the log nor a sort.
func TestEventsOfQueryPlan(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	defer s.Close()
	_, err := s.pool.Exec(ctx, `INSERT INTO events (at, actor, action, object, subject, result, detail)
		SELECT i, 'alice', 'deploy', 'config', 'c' || (i % 100), 'ok', '' FROM generate_series(1, 20000) AS i`)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, "ANALYZE events"); err != nil {
		t.Fatal(err)
	}
	rows, err := s.pool.Query(ctx, "EXPLAIN "+rebind(sqlstore.EventsOfQuery), "config", "c7", int64(15000), 30)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, line)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	text := strings.Join(plan, "\n")
	t.Logf("plan:\n%s", text)
	if !strings.Contains(text, "Index Scan Backward using events_object") {
		t.Errorf("Events.Of does not read the index events_object backwards:\n%s", text)
	}
	if strings.Contains(text, "Seq Scan") || strings.Contains(text, "Sort") {
		t.Errorf("Events.Of scans or sorts the log:\n%s", text)
	}
}
