package cli_test

import (
	"testing"

	"stagehand/internal/deptest"
)

// TestCLIDependsOnlyOnTheClient keeps the command line on its side of the
// HTTP boundary: it speaks to the daemon through the client, in wire types
// and error kinds, and never builds the daemon's parts itself.
func TestCLIDependsOnlyOnTheClient(t *testing.T) {
	deptest.Only(t, "stagehand/internal/cli",
		"stagehand/internal/client", "stagehand/internal/api/wire", "stagehand/internal/errdefs")
}
