package journal_test

import (
	"strings"
	"testing"

	"stagehand/internal/deptest"
)

// TestJournalStaysBelowTheLab keeps the journal a leaf of the lab: the
// core, archives and the doctor use it, so it may import none of them,
// nor what serves the lab.
func TestJournalStaysBelowTheLab(t *testing.T) {
	const pkg = "stagehand/internal/lab/journal"
	deptest.Never(t, pkg, "stagehand/internal/api", "stagehand/internal/cli",
		"stagehand/internal/client", "stagehand/internal/daemon")
	for _, dep := range deptest.Deps(t, pkg) {
		if strings.HasPrefix(dep, "stagehand/internal/lab") && dep != pkg {
			t.Errorf("%s depends on %s, which it must not", pkg, dep)
		}
	}
}
