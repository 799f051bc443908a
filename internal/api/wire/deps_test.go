package wire_test

import (
	"testing"

	"stagehand/internal/deptest"
)

// TestNoStagehandDependencies keeps wire importable by tools on its own.
func TestNoStagehandDependencies(t *testing.T) {
	deptest.Only(t, "stagehand/internal/api/wire")
}
