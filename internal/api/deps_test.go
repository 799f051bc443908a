package api_test

import (
	"testing"

	"stagehand/internal/deptest"
)

// TestAPIReachesTheHostOnlyThroughTheLab keeps the HTTP layer off the
// host: disks, QEMU and fences are the lab's to drive, and the store
// implementation is the daemon's to pick.
func TestAPIReachesTheHostOnlyThroughTheLab(t *testing.T) {
	deptest.NeverImports(t, "stagehand/internal/api",
		"stagehand/internal/disk", "stagehand/internal/hypervisor", "stagehand/internal/fence")
	deptest.Never(t, "stagehand/internal/api", "stagehand/internal/store/sqlite")
}
