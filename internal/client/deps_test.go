package client_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestClientDependsOnlyOnWire keeps the client on its side of the HTTP
// boundary: it speaks wire types and error kinds, never the lab.
func TestClientDependsOnlyOnWire(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "stagehand/internal/client").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	allowed := map[string]bool{
		"stagehand/internal/client":   true,
		"stagehand/internal/api/wire": true,
		"stagehand/internal/errdefs":  true,
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, "stagehand/") && !allowed[dep] {
			t.Errorf("client depends on %s", dep)
		}
	}
}
