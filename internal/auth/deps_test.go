package auth

import (
	"testing"

	"stagehand/internal/deptest"
)

// auth is pure: it decides from what it is given and reaches no store,
// no HTTP layer, no lab.
func TestDeps(t *testing.T) {
	deptest.Only(t, "stagehand/internal/auth", "stagehand/internal/errdefs")
}
