package client_test

import (
	"testing"

	"stagehand/internal/deptest"
)

// TestClientDependsOnlyOnWire keeps the client on its side of the HTTP
// boundary: it speaks wire types and error kinds, never the lab.
func TestClientDependsOnlyOnWire(t *testing.T) {
	deptest.Only(t, "stagehand/internal/client", "stagehand/internal/api/wire", "stagehand/internal/errdefs")
}
