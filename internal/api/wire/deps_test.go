package wire_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoStagehandDependencies keeps wire importable by tools on its own.
func TestNoStagehandDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "stagehand/internal/api/wire").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, "stagehand/") && dep != "stagehand/internal/api/wire" {
			t.Errorf("wire depends on %s", dep)
		}
	}
}
