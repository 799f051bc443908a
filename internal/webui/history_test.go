package webui_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"stagehand/internal/api/apitest"
	"stagehand/internal/store"
	"stagehand/internal/webui"
)

// addEvents adds n events about object kind/subject straight through the
// store (actions "NAME-0", "NAME-1", ...), many to a transaction.
func addEvents(tb testing.TB, st store.Store, object, subject, action string, n int) {
	tb.Helper()
	const perTx = 10000
	for from := 0; from < n; from += perTx {
		err := st.Update(context.Background(), func(tx store.Tx) error {
			for i := from; i < min(from+perTx, n); i++ {
				e := store.Event{Actor: "alice", Action: fmt.Sprintf("%s-%d", action, i), Object: object, Subject: subject, Result: "ok"}
				if err := tx.Events().Add(&e); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			tb.Fatal(err)
		}
	}
}

// historyOf returns the data-event ids of the page's history, in order,
// and the href of its "Older events" link ("" when none).
func historyOf(t *testing.T, page string) (ids []string, older string) {
	t.Helper()
	for _, li := range elements(t, page, "li") {
		if id := li["data-event"]; id != "" {
			ids = append(ids, id)
		}
	}
	for _, a := range elements(t, page, "a") {
		if a["data-action"] == "config.history.older" {
			older = a["href"]
		}
	}
	return ids, older
}

// TestConfigHistoryOlderThanTheLog: a configuration whose events are
// older than 12,000 others still shows its history, newest first, 30 at
// a time, and "Older events" pages back to its first event (create);
// events of another configuration, or of a library entry of the same
// name, are not shown.
func TestConfigHistoryOlderThanTheLog(t *testing.T) {
	c := newConsole(t, webui.Options{})
	c.User(t, "admin", true)
	s := c.Token(t, "admin", apitest.TokenOptions{Session: true})
	addEvents(t, c.Store(), "config", "web", "step", 40) // after the seed's create: 41 events
	addEvents(t, c.Store(), "library", "web", "published", 5)
	addEvents(t, c.Store(), "config", "other", "busy", 12000)

	page := c.page(t, s, "/ui/configs/web")
	ids, older := historyOf(t, page)
	if len(ids) != 30 || older == "" {
		t.Fatalf("the page shows %d events (older link %q), want 30 and a link to older ones", len(ids), older)
	}
	for _, want := range []string{"<strong>step-39</strong>", "<strong>step-10</strong>"} {
		if !strings.Contains(page, want) {
			t.Errorf("the first page of the history lacks %s", want)
		}
	}
	for _, not := range []string{"step-9<", "published-", "busy-"} {
		if strings.Contains(page, not) {
			t.Errorf("the first page of the history shows %s", not)
		}
	}
	if strings.Index(page, "step-39<") > strings.Index(page, "step-38<") {
		t.Errorf("the history is not newest first")
	}

	page = c.page(t, s, older)
	rest, further := historyOf(t, page)
	if len(rest) != 11 || further != "" {
		t.Errorf("the older page shows %d events (older link %q), want the 11 left and no link", len(rest), further)
	}
	if !strings.Contains(page, "<strong>create</strong>") || !strings.Contains(page, "<strong>step-9</strong>") || strings.Contains(page, "step-10<") {
		t.Errorf("the older page does not hold step-9 down to the configuration's create")
	}
	if !actionsOf(t, page)["config.history.newest"] {
		t.Errorf("the older page has no link back to the newest events")
	}
	seen := map[string]bool{}
	for _, id := range append(ids, rest...) {
		if seen[id] {
			t.Errorf("event %s shown on both pages", id)
		}
		seen[id] = true
	}

	before := strings.TrimSuffix(older[strings.Index(older, "?"):], "#history")
	part := c.page(t, s, "/ui/configs/web/part/history"+before)
	if got, _ := historyOf(t, part); strings.Join(got, ",") != strings.Join(rest, ",") {
		t.Errorf("the history part with %s shows %v, want %v", before, got, rest)
	}
	if res, body := c.get(t, s, "/ui/configs/web?before=soon"); res.StatusCode != http.StatusBadRequest || !strings.Contains(body, "soon") || !strings.Contains(body, "is not an event id") {
		t.Errorf("?before=soon = %d %.200s, want 400 naming it", res.StatusCode, body)
	}
}
