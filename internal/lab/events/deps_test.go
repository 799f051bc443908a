package events_test

import (
	"testing"

	"stagehand/internal/deptest"
)

// TestEventsStayBelowTheLab keeps the event log apart from what records
// into it and what serves it: it needs the store, never the lab, the HTTP
// layer, the command line or the daemon.
func TestEventsStayBelowTheLab(t *testing.T) {
	deptest.Never(t, "stagehand/internal/lab/events",
		"stagehand/internal/lab", "stagehand/internal/api", "stagehand/internal/cli",
		"stagehand/internal/client", "stagehand/internal/daemon")
}
