package deploy_test

import (
	"testing"

	"stagehand/internal/deptest"
)

// TestDeployStaysBelowTheLab keeps deployments apart from the lab they
// serve and from what serves them: they ask the lab through their own Lab
// interface, never by importing the lab, the HTTP layer, the command line
// or the daemon. The lab's event types (lab/events) it may use.
func TestDeployStaysBelowTheLab(t *testing.T) {
	const pkg = "stagehand/internal/lab/deploy"
	deptest.Never(t, pkg, "stagehand/internal/api", "stagehand/internal/cli",
		"stagehand/internal/client", "stagehand/internal/daemon")
	for _, dep := range deptest.Deps(t, pkg) {
		if dep == "stagehand/internal/lab" {
			t.Errorf("%s depends on %s, which it must not", pkg, dep)
		}
	}
}
