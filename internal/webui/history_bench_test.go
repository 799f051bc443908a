package webui_test

import (
	"net/http"
	"testing"

	"stagehand/internal/api/apitest"
	"stagehand/internal/webui"
)

// BenchmarkConfigHistory times the history part of a configuration's page
// (GET /ui/configs/web/part/history, as the page's live updates ask it)
// with 100,000 events in the log, one in 2,000 about web (50, spread over
// the log's age): docs/benchmarks.md compares it with the scan of the
// log's tail it replaced.
func BenchmarkConfigHistory(b *testing.B) {
	c := newConsole(b, webui.Options{})
	c.User(b, "admin", true)
	s := c.Token(b, "admin", apitest.TokenOptions{Session: true})
	for range 50 {
		addEvents(b, c.Store(), "config", "other", "busy", 1999)
		addEvents(b, c.Store(), "config", "web", "step", 1)
	}
	b.ResetTimer()
	for range b.N {
		if res, body := c.get(b, s, "/ui/configs/web/part/history"); res.StatusCode != http.StatusOK {
			b.Fatalf("GET the history part: %d %.200s", res.StatusCode, body)
		}
	}
}
