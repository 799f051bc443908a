package lease_test

import (
	"testing"

	"stagehand/internal/deptest"
)

// TestLeaseStaysBelowTheLab keeps the lease rules apart from the lab that
// carries them out and from what serves it: they are pure functions of the
// store's leases and the clock, and never import the lab, the HTTP layer,
// the command line or the daemon.
func TestLeaseStaysBelowTheLab(t *testing.T) {
	const pkg = "stagehand/internal/lab/lease"
	deptest.Never(t, pkg, "stagehand/internal/lab", "stagehand/internal/api",
		"stagehand/internal/cli", "stagehand/internal/client", "stagehand/internal/daemon")
}
