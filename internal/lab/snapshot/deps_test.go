package snapshot

import (
	"go/build"
	"strings"
	"testing"
)

// The bookkeeping is pure: it knows the store's records and nothing of
// the lab, the API or the runtime.
func TestDependencies(t *testing.T) {
	pkg, err := build.ImportDir(".", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, imp := range pkg.Imports {
		if strings.HasPrefix(imp, "stagehand/") && imp != "stagehand/internal/store" {
			t.Errorf("snapshot imports %s; it may import only internal/store of the module", imp)
		}
	}
}
