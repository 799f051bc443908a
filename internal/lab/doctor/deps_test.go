package doctor_test

import (
	"testing"

	"stagehand/internal/deptest"
)

// TestDoctorStaysBelowTheLab keeps the doctor apart from what it checks
// for and what serves it: it asks the lab through its own Lab interface,
// never by importing the lab, the HTTP layer, the command line or the
// daemon. The lab's archive format (lab/bundle) it may read.
func TestDoctorStaysBelowTheLab(t *testing.T) {
	const pkg = "stagehand/internal/lab/doctor"
	deptest.Never(t, pkg, "stagehand/internal/api", "stagehand/internal/cli",
		"stagehand/internal/client", "stagehand/internal/daemon")
	for _, dep := range deptest.Deps(t, pkg) {
		if dep == "stagehand/internal/lab" {
			t.Errorf("%s depends on %s, which it must not", pkg, dep)
		}
	}
}
