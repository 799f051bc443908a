package lab_test

import (
	"testing"

	"stagehand/internal/deptest"
)

// TestLabStaysBelowTheAPI keeps the domain, and every package split out of
// it, under the layers that serve it: none knows about HTTP, the command
// line or the daemon.
func TestLabStaysBelowTheAPI(t *testing.T) {
	for _, pkg := range deptest.Packages(t, "stagehand/internal/lab/...") {
		deptest.Never(t, pkg,
			"stagehand/internal/api", "stagehand/internal/cli", "stagehand/internal/client", "stagehand/internal/daemon")
	}
}
