package archive_test

import (
	"testing"

	"stagehand/internal/deptest"
)

// TestArchiveStaysBelowTheLab keeps archives apart from the lab they serve
// and from what serves them: they ask the lab through their own Lab
// interface, never by importing the lab, the HTTP layer, the command line
// or the daemon.
func TestArchiveStaysBelowTheLab(t *testing.T) {
	const pkg = "stagehand/internal/lab/archive"
	deptest.Never(t, pkg, "stagehand/internal/api", "stagehand/internal/cli",
		"stagehand/internal/client", "stagehand/internal/daemon")
	for _, dep := range deptest.Deps(t, pkg) {
		if dep == "stagehand/internal/lab" {
			t.Errorf("%s depends on %s, which it must not", pkg, dep)
		}
	}
}
